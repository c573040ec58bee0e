"""Grammars and strings: the grammar file, LR(1) parser, random expressions, string forms,
semantic decoding constraints and the masked stack decoder (nltk lives here only)."""
