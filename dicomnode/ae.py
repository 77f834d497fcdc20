"""This node's DICOM application entity, the same whether it receives (``dicomnode.receive``) or sends
(``dicomnode.dispatch``): its AE title, maximum PDU size and timeouts from ``node.*``."""

from __future__ import annotations

from pynetdicom import AE

from dicomnode.config import NodeConfig


def node_ae(config: NodeConfig) -> AE:
    """An AE with this node's AE title, maximum PDU size and ACSE/DIMSE/network timeouts (SCU and SCP alike)."""
    node = config.node
    ae = AE(ae_title=node.ae_title)
    ae.maximum_pdu_size = node.max_pdu_size
    ae.acse_timeout = node.acse_timeout
    ae.dimse_timeout = node.dimse_timeout
    ae.network_timeout = node.network_timeout
    ae.connection_timeout = node.acse_timeout  # TCP connect, as requestor
    return ae
