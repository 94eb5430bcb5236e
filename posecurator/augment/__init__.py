"""posecurator.augment"""
