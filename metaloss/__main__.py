import sys

from metaloss.cli import main

sys.exit(main())
