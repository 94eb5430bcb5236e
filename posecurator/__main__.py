import sys

from posecurator.cli.main import main

sys.exit(main())
