"""posecurator.train"""
