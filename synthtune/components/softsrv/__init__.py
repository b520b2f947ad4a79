"""SoftSRV's pure parts: soft-prompt parameterizations (SS_NP, SS_MPk, SS_MC), the prefix-LM
reconstruction loss, and the template prompts of the PT / PT_SR baselines."""
