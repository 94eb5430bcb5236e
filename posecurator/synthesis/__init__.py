"""Synthesis: pose descriptions (:mod:`~posecurator.synthesis.describe`), captions of samples and
clips (:mod:`~posecurator.synthesis.captions`) and text embeddings from a pretrained sentence
encoder (:mod:`~posecurator.synthesis.text_embedding`): what PoseSyn's motion model is
conditioned on; the motion representation (:mod:`~posecurator.synthesis.motion_repr`), real
motion windows as a stand-in motion source (:mod:`~posecurator.synthesis.real_motions`), the
orientation-aligned placement of motions in a reference camera
(:mod:`~posecurator.synthesis.alignment`) and the 2D-3D pairs made from them, with their export
for image animation models (:mod:`~posecurator.synthesis.pairs`). Import from the modules; this
package file stays light (no torch on import)."""
