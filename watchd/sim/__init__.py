"""A stand-alone simulator of the PicWish advanced-image-expand API, for tests and demos.

    from watchd.sim import Simulator, SimConfig
    with Simulator(SimConfig(qps=2, processing_time=(0.1, 0.2))).start() as sim:
        ...  # point a client at sim.base_url; read sim.uploads and sim.stats afterwards

Owns: everything under watchd/sim/ (`python -m watchd.sim` runs it in the foreground).
Must never: import the rest of watchd, or need anything beyond the stdlib and Pillow.
"""

from watchd.sim.config import SimConfig, UploadRecord
from watchd.sim.server import Simulator

__all__ = ["SimConfig", "Simulator", "UploadRecord"]
