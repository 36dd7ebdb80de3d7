"""Readers and writers: medical images (``medcl.io.image``) and ECG records (``medcl.io.ecg``)."""
