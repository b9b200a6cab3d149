"""The hypervisor below the VMs: its classes (README, "Hypervisor classes")."""

# native: exits handled in the core's own process; hosted: by a separate host process;
# dual: hosted, with a privileged part in the core finishing some exits without the hop
CLASSES = ("native", "hosted", "dual")
