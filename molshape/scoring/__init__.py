"""Scores of strings: RDKit chemistry (the only RDKit importer), expression scores, and the
realism of generated molecules."""
