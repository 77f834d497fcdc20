"""Tests of the DICOM result objects (SR, Secondary Capture, GSPS) with real validators."""
