import sys

from kindlyguard_monitor.cli.main import main

sys.exit(main())
