"""python -m tui_grad"""

import sys

from tui_grad.cli import main

sys.exit(main())
