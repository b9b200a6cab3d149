"""The hypervisor below the VMs: its classes (DESIGN.md, "Hypervisor classes")."""

# native: exits handled in the core's own process; hosted: by a separate host process
CLASSES = ("native", "hosted")
