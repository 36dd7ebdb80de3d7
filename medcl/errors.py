"""The one user-facing error type of medcl."""


class MedclError(ValueError):
    """A problem with the user's input (file, key, option), reported as one line.

    The message starts with what is wrong (a file path or a config key) followed by the problem,
    e.g. ``"scan.nii.gz: has 4 dimensions; expected a 3D image"``. The CLI prints it as
    ``medcl: error: <message>`` and exits with code 2.
    """
