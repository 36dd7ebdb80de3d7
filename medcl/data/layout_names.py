"""Names of the data set layouts ``medcl data datalist`` reads (light: the CLI imports it for --help)."""

LAYOUTS: tuple[str, ...] = ("nnunet", "msd", "prostate158", "picai", "prostatex", "folder")
