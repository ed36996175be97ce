import sys

from marionet.cli import main

sys.exit(main())
