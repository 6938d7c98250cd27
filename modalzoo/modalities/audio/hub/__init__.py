"""Hub mappings of audio models (HubertModel, ASTModel), found by `components.modality_modules("hub")`."""
