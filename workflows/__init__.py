"""The pack's Mistral workflow definitions, shipped with the package for `vm-expiry deploy`."""
