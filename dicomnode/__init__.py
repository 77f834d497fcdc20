"""KneeAlign DICOM node: receive knee radiographs, measure alignment, send the SR and overlay back."""
