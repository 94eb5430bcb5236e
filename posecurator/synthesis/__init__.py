"""posecurator.synthesis"""
