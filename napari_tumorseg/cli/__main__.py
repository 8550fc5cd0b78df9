import sys

from napari_tumorseg.cli import main

sys.exit(main())
