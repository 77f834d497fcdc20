"""Receiving side of the node: a Storage/Verification SCP that stores instances durably and hands them on.

``Receiver(config, on_stored)`` listens on ``node.bind:node.port``; each accepted image is written to
``<storage.dir>/instances/<StudyInstanceUID>/<SOPInstanceUID>.dcm`` and described by a ``StoredInstance``.
"""

from dicomnode.receive.instance import OnStored, StoredInstance
from dicomnode.receive.server import Receiver
from dicomnode.receive.spool import free_space_mb

__all__ = ["OnStored", "Receiver", "StoredInstance", "free_space_mb"]
