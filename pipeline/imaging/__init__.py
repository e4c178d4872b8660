"""Bytes in, grey uint8 out, and every refusal: PNG, JPEG, BMP, TIFF and DICOM decoding.

May import the root modules only; every other stage decodes images through it.
"""
