"""posecurator.selection"""
