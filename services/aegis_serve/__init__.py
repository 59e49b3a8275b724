"""aegis-serve: gRPC embedding service with an asymmetric query/document split."""

import time as _time

#: When this process began importing the service (the start line reports time since then).
PROCESS_START = _time.monotonic()
