"""Segmentation post-processing for prostate zone maps.

* :mod:`~medcl.postprocess.components`: largest connected component per zone and of the gland.
* :mod:`~medcl.postprocess.gapfill`: signed distances and gap filling (disjoint zones fill the gland).
* :mod:`~medcl.postprocess.zones`: the chain used at inference (:func:`~medcl.postprocess.zones.clean_zones`).
* :mod:`~medcl.postprocess.volumes`: zone volumes in mL from the native voxel size.
* :mod:`~medcl.postprocess.sectors`: the PI-RADS v2.1 sector map in patient (RAS) coordinates.
"""
