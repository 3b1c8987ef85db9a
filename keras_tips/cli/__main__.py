"""`python -m keras_tips.cli`: the `keras-tips` command."""

import sys

from keras_tips.cli.entry_point import main

sys.exit(main())
