"""Presentation contexts the receiver accepts: Verification and every storage SOP class in every transfer syntax.

Images are stored exactly as received (JPEG baseline/lossless, JPEG-LS, JPEG 2000, HTJ2K, RLE, deflated, ...) and
only decoded at processing time. Non-image storage classes (SR, PDF, ...) are accepted at association level so that
the peer gets an explicit C-STORE failure status for them instead of a rejected presentation context.
"""

from __future__ import annotations

from pynetdicom import ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, build_context
from pynetdicom.presentation import PresentationContext
from pynetdicom.sop_class import Verification


def _scp_context(abstract_syntax: str) -> PresentationContext:
    context = build_context(abstract_syntax, ALL_TRANSFER_SYNTAXES)
    # With SCP/SCU role selection proposed by the peer: the peer may act as SCU (it sends to us), never as SCP.
    context.scu_role = True
    context.scp_role = False
    return context


def supported_contexts() -> list[PresentationContext]:
    """Verification plus all storage SOP classes known to pynetdicom, each with all transfer syntaxes."""
    return [_scp_context(Verification)] + [
        _scp_context(context.abstract_syntax) for context in AllStoragePresentationContexts
    ]
