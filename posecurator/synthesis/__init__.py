"""Synthesis: pose descriptions (:mod:`~posecurator.synthesis.describe`), captions of samples and
clips (:mod:`~posecurator.synthesis.captions`) and text embeddings from a pretrained sentence
encoder (:mod:`~posecurator.synthesis.text_embedding`): what PoseSyn's motion model is
conditioned on. Import from the modules; this package file stays light (no torch on import)."""
