"""The hypervisor below the VMs: its classes (README, "Hypervisor classes")."""

# native: exits handled in the core's own process; hosted: by a separate host process
CLASSES = ("native", "hosted")
