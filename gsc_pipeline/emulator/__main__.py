import sys

from gsc_pipeline.emulator.cli import main

sys.exit(main())
