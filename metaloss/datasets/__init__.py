"""Real data sets that ship inside installed packages (scikit-learn, statsmodels): no download.

One module per kind of data set; each loader returns plain tensors and imports its package only
when called, with one clear line if the package is missing.
"""
