"""What only the readmission model has: the diabetic_data.csv schema constants and IDS domains (``schema``), the
encounter -> features transform (``transform``, ``features``), the calibrated generator (``synthetic``) and the
features suite's extra checks (``quality``). Its spec is ``models/readmission.yaml``."""
