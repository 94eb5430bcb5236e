"""posecurator.cli"""
