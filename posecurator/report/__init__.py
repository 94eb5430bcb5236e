"""posecurator.report"""
