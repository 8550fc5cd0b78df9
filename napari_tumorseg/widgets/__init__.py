"""napari dock widgets: thin Qt drivers of the core API.

Importing this package first keeps Triton out of the GUI process. The CUDA build of
torch imports Triton (for torch.compile, which this plugin never uses); Triton bundles
its own LLVM, and loading it after Mesa's llvmpipe (napari's OpenGL on machines without
a GPU driver) crashes the process with a segmentation fault. Marking the module as
absent makes torch treat Triton as not installed, which is exactly its CPU behaviour.
"""

import sys

if "triton" not in sys.modules:
    sys.modules["triton"] = None  # type: ignore[assignment]
