"""Statistics against hand-computed values and scipy: t-based CIs, paired t and Wilcoxon tests,
win rates with ties, the verdict rule and its minimum number of pairs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
import torch

from metaloss.config import ConfigError, EvalConfig, parse
from metaloss.evaluation.formatting import PAIRED_COLUMNS, format_p, paired_cells
from metaloss.evaluation.stats import (
    DEFAULT_MIN_PAIRS,
    FEW_PAIRS,
    mean_ci,
    paired_comparison,
    paired_t_test,
    t_quantile,
    verdict_rule,
    wilcoxon_test,
)

# Student's t 97.5% quantiles from printed tables (Fisher & Yates), not from the code under test.
T975 = {1: 12.7062, 2: 4.3027, 3: 3.1824, 5: 2.5706, 9: 2.2622, 29: 2.0452}


@pytest.mark.parametrize("dof", sorted(T975))
def test_t_quantile_matches_the_printed_table(dof: int) -> None:
    assert t_quantile(dof) == pytest.approx(T975[dof], abs=1e-4)


def test_mean_ci_is_the_t_interval_by_hand() -> None:
    # [1, 2, 3, 4]: mean 2.5, s = sqrt(5/3), half-width t_3 * s / 2.
    ci = mean_ci(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    assert ci.mean == 2.5 and ci.n == 4
    assert ci.half_width == pytest.approx(3.182446305 * math.sqrt(5 / 3) / 2, rel=1e-9)
    assert (ci.low, ci.high) == pytest.approx((2.5 - ci.half_width, 2.5 + ci.half_width))
    # Three values: t_2 = 4.303 widens the interval 2.2-fold over the normal quantile.
    three = mean_ci([0.0, 1.0, 2.0])
    assert three.half_width == pytest.approx(4.302652730 / math.sqrt(3), rel=1e-9)


def test_mean_ci_edge_cases() -> None:
    assert mean_ci([]).n == 0 and math.isnan(mean_ci([]).mean)
    one = mean_ci([3.0])
    assert one.mean == 3.0 and one.half_width == math.inf
    assert mean_ci(np.array([2.0, 2.0])).half_width == 0.0
    assert str(mean_ci([1.0, 2.0, 3.0, 4.0])) == "2.5 ± 2.1"


def test_overlap_of_intervals() -> None:
    a, b = mean_ci([1.0, 2.0, 3.0]), mean_ci([10.0, 11.0, 12.0])
    assert not a.overlaps(b) and not b.overlaps(a)
    assert a.overlaps(mean_ci([2.0, 3.0, 4.0]))


@pytest.mark.parametrize("n", [5, 20, 200])
def test_paired_p_values_equal_scipy_on_random_data(n: int) -> None:
    generator = np.random.default_rng(n)
    a = generator.normal(size=n)
    b = a + generator.normal(0.3, 1.0, size=n)
    t, p = paired_t_test(torch.from_numpy(a), torch.from_numpy(b))
    reference = scipy.stats.ttest_rel(a, b)
    assert abs(p - reference.pvalue) < 1e-10 and abs(t - reference.statistic) < 1e-10
    _, p_w = wilcoxon_test(a, b)
    assert abs(p_w - scipy.stats.wilcoxon(a - b, zero_method="zsplit").pvalue) < 1e-10
    c = paired_comparison(a, b)
    assert abs(c.p_t - reference.pvalue) < 1e-10 and c.n == n


def test_paired_comparison_by_hand() -> None:
    # Differences -1, -1.5, -1, -1.5, -1, -1.5: mean -1.25, s = sqrt(0.075), t = -1.25 / (s / sqrt 6).
    a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    b = [2.0, 3.5, 4.0, 5.5, 6.0, 7.5]
    c = paired_comparison(a, b)
    t = -1.25 / (math.sqrt(0.075) / math.sqrt(6))
    assert c.n == 6 and c.t == pytest.approx(t, rel=1e-12)
    assert c.p_t == pytest.approx(2 * scipy.stats.t.sf(abs(t), 5), rel=1e-9)
    # Exact Wilcoxon: only the all-negative sign pattern and its mirror reach T = 0 (2 of 2^6).
    assert c.p_wilcoxon == pytest.approx(2 / 64, rel=1e-12)
    assert c.difference.mean == pytest.approx(-1.25)
    assert c.difference.half_width == pytest.approx(2.570582 * math.sqrt(0.075 / 6), rel=1e-6)
    assert c.win_rate == 1.0 and c.verdict == "better"
    assert paired_comparison(b, a).verdict == "worse" and paired_comparison(b, a).win_rate == 0.0


def test_win_rate_counts_ties_half_and_follows_the_direction() -> None:
    # a - b = -1, 0, +1, +2: one win, one tie, two losses when lower is better.
    a, b = [1.0, 2.0, 3.0, 4.0], [2.0, 2.0, 2.0, 2.0]
    assert paired_comparison(a, b).win_rate == pytest.approx(1.5 / 4)
    assert paired_comparison(a, b, higher_is_better=True).win_rate == pytest.approx(2.5 / 4)


def test_higher_is_better_turns_the_verdict() -> None:
    a, b = [2.0, 3.5, 4.0, 5.5, 6.0, 7.5], [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert paired_comparison(a, b, higher_is_better=True).verdict == "better"
    assert paired_comparison(a, b).verdict == "worse"


def test_too_few_pairs_is_never_better_or_worse() -> None:
    a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    b = [x + 10.0 + 0.1 * i for i, x in enumerate(a)]
    five = paired_comparison(a[:5], b[:5])
    assert five.p_t < 1e-6 and five.verdict == "too few pairs"
    assert paired_comparison(a[:6], b[:6]).verdict == "better"
    assert paired_comparison(a, b, min_pairs=8).verdict == "too few pairs"
    assert paired_comparison(a, b, min_pairs=7).verdict == "better"
    assert five.few_pairs and paired_comparison(a * 2, b * 2).few_pairs is False


def test_both_tests_must_reject() -> None:
    # t rejects (p = 0.013), the signed-rank test does not (p = 0.18): no verdict either way.
    b = np.zeros(12)
    d = np.array([-3.0, -3.2, -2.8, -3.1, 0.1, 0.2, 0.15, 0.3, 0.25, 0.05, -2.9, -3.3])
    c = paired_comparison(d, b)
    assert c.p_t < 0.05 < c.p_wilcoxon
    assert c.verdict == "no significant difference" and c.tests_disagree
    assert paired_cells(c)[-1] == "no significant difference†"


def test_tests_rejecting_in_opposite_directions_give_no_verdict() -> None:
    # 52 small losses and 12 large wins of b: the mean says a is worse (t), the ranks that a is
    # better on most pairs (Wilcoxon); both reject, in opposite directions.
    d = np.array([-0.2 - 0.001 * i for i in range(52)] + [3.0 + 0.05 * i for i in range(12)])
    c = paired_comparison(d, np.zeros(64))
    assert c.p_t < 0.05 and c.p_wilcoxon < 0.05 and c.t > 0 > c.signed_rank
    assert c.verdict == "no significant difference" and c.tests_disagree
    assert paired_cells(c)[-1] == "no significant difference†"
    agree = paired_comparison([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [2.0, 3.5, 4.0, 5.5, 6.0, 7.5])
    assert not agree.tests_disagree and agree.signed_rank == -21.0


def test_zero_differences_split_their_rank_and_all_ties_give_p_one() -> None:
    a = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0])
    b = a + np.array([0.0, 0.0, 1.0, 2.0, -3.0, 4.0, 5.0, 0.0])
    c = paired_comparison(a, b)
    expected = scipy.stats.wilcoxon(a - b, zero_method="zsplit").pvalue
    assert c.p_wilcoxon == pytest.approx(expected, rel=1e-12) and c.n == 8
    same = paired_comparison(a, a)
    assert (same.t, same.p_t, same.p_wilcoxon, same.win_rate) == (0.0, 1.0, 1.0, 0.5)
    assert same.verdict == "no significant difference"
    shifted = paired_comparison(a, a + 1.0)  # a constant shift: t = -inf, p = 0
    assert shifted.t == -math.inf and shifted.p_t == 0.0


@pytest.mark.parametrize("n", [4, 7, 9])
def test_signed_rank_p_with_ties_equals_scipy(n: int) -> None:
    # Ties and zeros on few pairs: the exhaustive sign-flip distribution, as scipy computes it.
    d = np.random.default_rng(n).integers(-3, 4, size=n).astype(float)
    d[0], d[1] = 0.0, 2.0
    _, p = wilcoxon_test(d, np.zeros(n))
    assert abs(p - scipy.stats.wilcoxon(d, zero_method="zsplit").pvalue) < 1e-12


def test_non_finite_pairs_give_no_p_value() -> None:
    a = [1.0, 2.0, math.inf, 4.0, 5.0, 6.0]
    c = paired_comparison(a, [0.0] * 6)
    assert c.verdict == "not finite" and math.isnan(c.p_t) and math.isnan(c.p_wilcoxon)


def test_mismatched_pairs_are_refused() -> None:
    with pytest.raises(ValueError, match="as many values"):
        paired_comparison([1.0, 2.0], [1.0])


def test_min_pairs_setting_is_validated_and_documented() -> None:
    assert EvalConfig().min_pairs == DEFAULT_MIN_PAIRS
    assert parse({"evaluation": {"min_pairs": 20}}).evaluation.min_pairs == 20
    with pytest.raises(ConfigError, match=r"evaluation\.min_pairs"):
        parse({"evaluation": {"min_pairs": 5}})
    # Below 6 pairs the exact two-sided signed-rank test cannot reach p < 0.05 at all.
    assert scipy.stats.wilcoxon(np.arange(1.0, 6.0)).pvalue > 0.05
    assert scipy.stats.wilcoxon(np.arange(1.0, 7.0)).pvalue < 0.05
    rule = verdict_rule(12, "tasks")
    assert "at least 12 tasks" in rule and f"fewer than {FEW_PAIRS} tasks" in rule


def test_cells_flag_few_pairs_and_format_p_values() -> None:
    c = paired_comparison([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [2.0, 3.5, 4.0, 5.5, 6.0, 7.5])
    cells = paired_cells(c)
    assert len(cells) == len(PAIRED_COLUMNS)
    assert cells[0] == "6 ⚠" and cells[2] == "100%" and cells[4] == "0.031"
    assert cells[-1] == "better"
    assert (
        format_p(2.5e-5) == "2.5e-05" and format_p(0.5) == "0.500" and format_p(math.nan) == "n/a"
    )
