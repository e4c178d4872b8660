"""Bytes in, grey uint8 out, and every refusal: PNG, JPEG, BMP, TIFF and DICOM decoding; and
what another machine does to the picture (appearance augmentation).

May import the root modules only; every other stage decodes images through it.
"""
