"""posecurator.pipelines"""
