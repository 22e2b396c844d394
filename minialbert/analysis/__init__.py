"""Evidence: ablation studies and figures (attention maps like the paper's Figure 3, loss curves)."""
