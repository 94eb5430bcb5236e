"""posecurator.metrics"""
