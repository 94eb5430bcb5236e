"""posecurator.models"""
