"""The papers' evaluation protocols: sampling strategies (Diamond in the rough's Table 1, the
strategy sweeps), inversion methods (II2S's protocol table and supplement grid)."""
