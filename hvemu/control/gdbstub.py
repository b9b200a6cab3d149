"""A gdb remote stub: `--gdb tcp::1234` (or QEMU's `-s`), and `-S` to wait for it.

GDB's remote serial protocol (gdb/doc "Remote Protocol"), all-stop: one gdb thread per
vCPU (thread i+1 is hart i), a target description (org.gnu.gdb.riscv.cpu, .fpu, .csr
and .virtual for priv), g/G/p/P, m/M/X, Z0/Z1 breakpoints and Z2/Z3/Z4 watchpoints,
vCont (c, s, t; a thread no action names stays where it is), Ctrl-C, D (detach), k, and
qRcmd (gdb's `monitor CMD`), which runs the human monitor's commands.

Breakpoints are not written into guest memory: they are the core's debugger points
(`VCpu.set_debug_points`); a page holding one runs in the reference interpreter, which
checks each pc before the instruction, and every other page on the fast path, so the
guest reads its own code unchanged and pays little for a breakpoint elsewhere.
Watchpoints are debugger points for loads and/or stores: the shadow TLB never caches a
page one covers, so every access to such a page reaches the core's fill path, which
stops before an access that touches the watched bytes (RISC-V's "before" timing, which
gdb steps over).  Other pages run at full speed.

A connection stops the VM (QEMU's behaviour); it runs again on c/s/vCont, D, or when
gdb goes away.  A packet whose checksum is wrong is refused with `-` (NAK); a packet
the stub does not support gets the empty reply; a bad argument gets E01."""
from __future__ import annotations

import select
import socket
import threading
import time

from .._core import TRIGGER_EXEC, TRIGGER_LOAD, TRIGGER_STORE
from ..hypervisor.csr import CSR_NAMES, IllegalCsrAccess
from ..hypervisor.vcpu import Paused
from .endpoint import Endpoint, close_listener, listen
from .guestmem import Unmapped, read_virtual, write_virtual
from .monitor import ABI, FABI

SIGINT, SIGTRAP = 2, 5
PC, F0, FFLAGS, FRM, FCSR, CSR0, PRIV = 32, 33, 66, 67, 68, 65, 4161
GDB_CSRS = sorted(n for n in CSR_NAMES if n > 3)       # fflags/frm/fcsr are in the fpu feature
MASK64 = (1 << 64) - 1
# Z types: 0 software breakpoint, 1 hardware breakpoint, 2 write, 3 read, 4 access watchpoint
Z_KIND = {0: TRIGGER_EXEC, 1: TRIGGER_EXEC, 2: TRIGGER_STORE, 3: TRIGGER_LOAD,
          4: TRIGGER_LOAD | TRIGGER_STORE}
WATCH_NAME = {2: "watch", 3: "rwatch", 4: "awatch"}


def target_xml() -> str:
    regs = ['<feature name="org.gnu.gdb.riscv.cpu">']
    for i, name in enumerate(ABI):
        kind = "code_ptr" if name == "ra" else "data_ptr" if name in ("sp", "gp", "tp",
                                                                     "s0") else "int"
        regs.append(f'<reg name="{name}" bitsize="64" type="{kind}" regnum="{i}"/>')
    regs.append(f'<reg name="pc" bitsize="64" type="code_ptr" regnum="{PC}"/>')
    regs.append("</feature>")
    regs.append('<feature name="org.gnu.gdb.riscv.fpu">'
                '<union id="riscv_double"><field name="float" type="ieee_single"/>'
                '<field name="double" type="ieee_double"/></union>')
    for i, name in enumerate(FABI):
        regs.append(f'<reg name="{name}" bitsize="64" type="riscv_double" regnum="{F0 + i}"/>')
    for name, num in (("fflags", FFLAGS), ("frm", FRM), ("fcsr", FCSR)):
        regs.append(f'<reg name="{name}" bitsize="32" type="int" regnum="{num}"/>')
    regs.append("</feature>")
    regs.append('<feature name="org.gnu.gdb.riscv.csr">')
    for num in GDB_CSRS:
        regs.append(f'<reg name="{CSR_NAMES[num]}" bitsize="64" type="int" '
                    f'regnum="{CSR0 + num}" group="system"/>')
    regs.append("</feature>")
    regs.append(f'<feature name="org.gnu.gdb.riscv.virtual"><reg name="priv" bitsize="64" '
                f'type="int" regnum="{PRIV}" group="system"/></feature>')
    return ('<?xml version="1.0"?><!DOCTYPE target SYSTEM "gdb-target.dtd">'
            '<target version="1.0"><architecture>riscv:rv64</architecture>'
            + "".join(regs) + "</target>")


def checksum(data: bytes) -> bytes:
    return b"%02x" % (sum(data) & 0xFF)


def escape(data: bytes) -> bytes:
    out = bytearray()
    for b in data:
        if b in b"#$}*":
            out += bytes((0x7D, b ^ 0x20))
        else:
            out.append(b)
    return bytes(out)


def unescape(data: bytes) -> bytes:
    out = bytearray()
    it = iter(data)
    for b in it:
        out.append(next(it, 0) ^ 0x20 if b == 0x7D else b)
    return bytes(out)


class BadPacket(Exception):
    """A packet whose arguments do not parse: E01."""


def hexint(text: bytes | str) -> int:
    try:
        return int(text, 16)
    except ValueError:
        raise BadPacket(text) from None


class GdbStub:
    def __init__(self, control, endpoint: Endpoint):
        self.control = control
        self.vm = control.vm
        self.endpoint = endpoint
        self.listener = listen(endpoint, "--gdb")
        self.points: dict[tuple[int, int, int], tuple[int, int, int]] = {}
        self.thread = 0                  # the vCPU g/G/p/P/m/M act on (Hg)
        self.stop_info = None            # (vCPU index, reply) of the last debug stop
        self.stopped_event = threading.Event()
        self.noack = False
        self.conn: socket.socket | None = None
        self._closed = False
        self._ran = False
        self.vm.debugger = self
        self.vm.listeners.append(self.vm_event)
        from .monitor import Monitor
        self.monitor = Monitor(self.vm, control)

    def start(self) -> None:
        threading.Thread(target=self._accept_loop, name="hvemu-gdb", daemon=True).start()

    def close(self) -> None:
        self._closed = True
        close_listener(self.listener, self.endpoint)
        if self.conn is not None:
            try:
                self.conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # ---- from the scheduler's thread ----
    def stopped(self, vc, why: str) -> None:
        """A vCPU hit a debugger point or ended a single step: stop the VM (raises Paused)."""
        if why == "debug":
            reply = self._point_reply(vc)
        else:
            reply = ""
        self.stop_info = (vc.hartid, f"T{SIGTRAP:02x}{reply}thread:{vc.hartid + 1:x};")
        self.control.debug_stop = True
        self.vm.control.ask("pause")
        self.stopped_event.set()
        raise Paused

    def _point_reply(self, vc) -> str:
        v = vc.vcpu
        kind, addr = v.exit_cause, v.exit_tval
        if kind & TRIGGER_EXEC:
            return "swbreak:;"
        for (z, lo, length), _ in self.points.items():
            if z >= 2 and Z_KIND[z] & kind and lo <= addr < lo + length:
                return f"{WATCH_NAME[z]}:{lo:x};"
        return f"watch:{addr:x};"

    def vm_event(self, event: str, data: dict) -> None:
        if event == "SHUTDOWN":
            self.stopped_event.set()

    # ---- the connection ----
    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.conn = conn
            try:
                self._session(conn)
            except OSError:
                pass
            finally:
                self.conn = None
                if self._ran:                   # gdb went away: the guest runs on, as in QEMU
                    self._detach()              # (one held by -S stays held)
                else:
                    self.points.clear()
                    self._push_points()
                try:
                    conn.close()
                except OSError:
                    pass

    def _session(self, conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1) \
            if conn.family != socket.AF_UNIX else None
        self.noack = False
        self.thread = 0
        self._ran = not self.control.stopped()     # resume it when gdb goes away?
        if self.vm.state != "shutdown" and self._ran:
            self.control.debug_stop = True
            self.control.stop()
        self.buf = b""
        while not self._closed:
            packet = self._read_packet(conn)
            if packet is None:
                break
            if packet == b"\x03":
                continue                      # Ctrl-C while stopped: nothing to do
            reply = self.handle(packet)
            if reply is None:                 # k, or a resume that ended the session
                break
            if reply is RESUMED:
                reply = self._wait_for_stop(conn)
                if reply is None:
                    break
            self._send(conn, reply)
            if self._detached:
                break

    def _read_packet(self, conn) -> bytes | None:
        """The next packet's payload (unescaping is the command's), b'\\x03' for Ctrl-C,
        None at the end of the connection.  A bad checksum is NAK'd and skipped."""
        while True:
            i = 0
            while i < len(self.buf) and self.buf[i:i + 1] in (b"+", b"-"):
                i += 1
            self.buf = self.buf[i:]
            if self.buf[:1] == b"\x03":
                self.buf = self.buf[1:]
                return b"\x03"
            start = self.buf.find(b"$")
            if start > 0:
                self.buf = self.buf[start:]        # noise before a packet
                start = 0
            if start == 0:
                end = self.buf.find(b"#")
                if end > 0 and len(self.buf) >= end + 3:
                    data, cs = self.buf[1:end], self.buf[end + 1:end + 3]
                    self.buf = self.buf[end + 3:]
                    if cs.lower() != checksum(data):
                        conn.sendall(b"-")         # NAK: gdb sends it again
                        continue
                    if not self.noack:
                        conn.sendall(b"+")
                    return data
            elif self.buf:
                self.buf = b""
            chunk = conn.recv(65536)
            if not chunk:
                return None
            self.buf += chunk
            if len(self.buf) > 1 << 20:           # no packet is this long: drop it, NAK
                self.buf = b""
                conn.sendall(b"-")

    def _send(self, conn, reply: str | bytes) -> None:
        data = reply.encode() if isinstance(reply, str) else reply
        conn.sendall(b"$" + data + b"#" + checksum(data))

    # ---- resuming and stopping ----
    def _wait_for_stop(self, conn) -> str | None:
        """The VM runs: wait for a debug stop, Ctrl-C from gdb or the end of the VM."""
        vm = self.vm
        while True:
            if self.stopped_event.is_set():
                if vm.state == "shutdown":
                    return self._exit_reply()
                end = time.monotonic() + 5
                while not vm.control.paused and vm.state != "shutdown" \
                        and time.monotonic() < end:
                    time.sleep(0.001)
                if vm.state == "shutdown":
                    return self._exit_reply()
                index, reply = self.stop_info
                self.thread = index
                self._release()
                return reply
            ready, _, _ = select.select([conn], [], [], 0.02)
            if ready:
                chunk = conn.recv(4096)
                if not chunk:
                    return None
                if b"\x03" in chunk:
                    self.control.debug_stop = True
                    self.control.stop()
                    self._release()
                    if vm.state == "shutdown":
                        return self._exit_reply()
                    self.stopped_event.clear()
                    return f"T{SIGINT:02x}thread:{self.thread + 1:x};"
                self.buf += chunk.replace(b"+", b"")

    def _exit_reply(self) -> str:
        return f"W{min(self.vm.power.exit_code, 255):02x}"

    def _release(self) -> None:
        for vc in self.vm.vcpus:
            vc.step_end = None
            vc.held = False

    def _resume(self, actions: list[tuple[str, int | None]]) -> object:
        """Apply vCont actions [(c|s|t, thread or None for all)], then let the VM run."""
        if self.vm.state == "shutdown":
            return self._exit_reply()
        for i, vc in enumerate(self.vm.vcpus):
            act = next((a for a, tid in actions if tid is None or tid == i + 1), "t")
            vc.held = act == "t"
            vc.step_end = vc.vcpu.instret + 1 if act == "s" else None
        if all(vc.held for vc in self.vm.vcpus):
            raise BadPacket("no thread to resume")
        self.stop_info = None
        self.stopped_event.clear()
        self._ran = True
        self.control.cont()
        return RESUMED

    # ---- the packets ----
    def handle(self, packet: bytes):
        self._detached = False
        try:
            return self._handle(packet)
        except BadPacket:
            return "E01"
        except (Unmapped, IndexError):
            return "E14"                      # EFAULT, as gdbserver says

    def _handle(self, packet: bytes):
        text = packet.decode("latin-1")
        cmd = text[:1]
        vm = self.vm
        if cmd in "GPMX" and getattr(self.control, "recording", False):
            return "E01"          # --record: a write from the debugger would not be replayed
        if text.startswith("qSupported"):
            return ("PacketSize=4000;qXfer:features:read+;vContSupported+;"
                    "QStartNoAckMode+;swbreak+;hwbreak+")
        if text == "QStartNoAckMode":
            self.noack = True
            return "OK"
        if text.startswith("qXfer:features:read:"):
            annex, _, span = text[len("qXfer:features:read:"):].partition(":")
            if annex != "target.xml":
                return "E00"
            off, _, length = span.partition(",")
            xml = target_xml().encode()
            off, length = hexint(off), hexint(length)
            chunk = xml[off:off + length]
            return (b"l" if off + length >= len(xml) else b"m") + escape(chunk)
        if text.startswith("qRcmd,"):            # gdb's `monitor CMD`: the human monitor
            line = bytes.fromhex(text[6:]) if self._ishex(text[6:]) else None
            if line is None:
                raise BadPacket(text)
            self.monitor.cpu = self.thread
            out = self.monitor.execute(line.decode("utf-8", "replace")).replace("\r\n", "\n")
            return out.encode().hex() if out else "OK"
        if text == "?":
            index = self.stop_info[0] if self.stop_info else self.thread
            return f"T{SIGTRAP:02x}thread:{index + 1:x};"
        if text in ("qfThreadInfo",):
            return "m" + ",".join(f"{i + 1:x}" for i in range(len(vm.vcpus)))
        if text == "qsThreadInfo":
            return "l"
        if text == "qC":
            return f"QC{self.thread + 1:x}"
        if text == "qAttached":
            return "1"
        if text.startswith("qThreadExtraInfo,"):
            index = self._tid(text.split(",", 1)[1])
            vc = vm.vcpus[index]
            state = "held" if vc.held else "stopped" if self.control.stopped() else "running"
            return f"hart {index} ({state})".encode().hex()
        if cmd == "H":
            tid = text[2:]
            if tid not in ("0", "-1", ""):
                self.thread = self._tid(tid)
            return "OK"
        if cmd == "T":
            self._tid(text[1:])
            return "OK"
        if cmd == "g":
            v = self._vc().vcpu
            return "".join(self._le(v.get_x(i), 8) for i in range(32)) + self._le(v.pc, 8)
        if cmd == "G":
            data = bytes.fromhex(text[1:]) if self._ishex(text[1:]) else None
            if data is None or len(data) < 33 * 8:
                raise BadPacket(text)
            v = self._vc().vcpu
            for i in range(1, 32):
                v.set_x(i, int.from_bytes(data[8 * i:8 * i + 8], "little"))
            v.pc = int.from_bytes(data[256:264], "little")
            return "OK"
        if cmd == "p":
            return self._read_register(hexint(text[1:]))
        if cmd == "P":
            num, _, value = text[1:].partition("=")
            if not self._ishex(value) or not value:
                raise BadPacket(text)
            return self._write_register(hexint(num), int.from_bytes(bytes.fromhex(value),
                                                                      "little"))
        if cmd == "m":
            addr, length = self._addr_len(text[1:])
            if length > 0x10000:
                raise BadPacket(text)
            return read_virtual(self._vc(), addr, length).hex()
        if cmd == "M":
            head, _, data = text[1:].partition(":")
            addr, length = self._addr_len(head)
            if not self._ishex(data) or len(data) != 2 * length:
                raise BadPacket(text)
            write_virtual(self._vc(), addr, bytes.fromhex(data))
            return "OK"
        if cmd == "X":
            colon = packet.index(b":") if b":" in packet else -1
            if colon < 0:
                raise BadPacket(text)
            addr, length = self._addr_len(packet[1:colon].decode())
            data = unescape(packet[colon + 1:])
            if len(data) != length:
                raise BadPacket(text)
            if length:
                write_virtual(self._vc(), addr, data)
            return "OK"
        if cmd in ("Z", "z"):
            return self._point(cmd == "Z", text[1:])
        if text == "vCont?":
            return "vCont;c;C;s;S;t"
        if text.startswith("vCont;"):
            actions = []
            for part in text[len("vCont;"):].split(";"):
                act, _, tid = part.partition(":")
                if not act or act[0] not in "cCsSt":
                    raise BadPacket(text)
                actions.append((act[0].lower(), None if tid in ("", "-1") else
                                self._tid(tid) + 1))
            return self._resume(actions)
        if cmd in ("c", "C", "s", "S"):
            if cmd in "cC":
                return self._resume([("c", None)])
            return self._resume([("s", self.thread + 1), ("t", None)])
        if cmd == "D":
            self._detach()
            self._detached = True
            return "OK"
        if cmd == "k":
            self._detach(resume=False)
            self.control.quit()
            return None
        return ""                             # not supported: the empty reply

    def _detach(self, resume: bool = True) -> None:
        self.points.clear()
        self._push_points()
        self._release()
        self.stop_info = None
        self.control.debug_stop = False
        if resume:
            self.control.cont()

    # ---- helpers ----
    def _tid(self, text: str) -> int:
        tid = hexint(text.split(".")[-1]) if text else 1
        if not 1 <= tid <= len(self.vm.vcpus):
            raise BadPacket(text)
        return tid - 1

    def _vc(self):
        return self.vm.vcpus[self.thread]

    @staticmethod
    def _ishex(text: str) -> bool:
        return len(text) % 2 == 0 and all(c in "0123456789abcdefABCDEF" for c in text)

    @staticmethod
    def _le(value: int, size: int) -> str:
        return (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little").hex()

    def _addr_len(self, text: str) -> tuple[int, int]:
        addr, sep, length = text.partition(",")
        if not sep:
            raise BadPacket(text)
        return hexint(addr), hexint(length)

    def _read_register(self, num: int) -> str:
        vc = self._vc()
        v = vc.vcpu
        if num < 32:
            return self._le(v.get_x(num), 8)
        if num == PC:
            return self._le(v.pc, 8)
        if F0 <= num < F0 + 32:
            return self._le(v.get_f(num - F0), 8)
        if num == FFLAGS:
            return self._le(v.fflags, 4)
        if num == FRM:
            return self._le(v.frm, 4)
        if num == FCSR:
            return self._le((v.frm << 5) | v.fflags, 4)
        if num == PRIV:
            return self._le(vc.hart.priv, 8)
        csr = num - CSR0
        reader = vc.hart.csr.readers.get(csr)
        if reader is None or csr not in CSR_NAMES:
            return "E01"
        return self._le(reader(), 8)

    def _write_register(self, num: int, value: int) -> str:
        vc = self._vc()
        v = vc.vcpu
        if num < 32:
            v.set_x(num, value)
        elif num == PC:
            v.pc = value
        elif F0 <= num < F0 + 32:
            v.set_f(num - F0, value)
        elif num == FFLAGS:
            v.fflags = value
        elif num == FRM:
            v.frm = value
        elif num == FCSR:
            v.fflags, v.frm = value & 0x1F, (value >> 5) & 7
        elif num == PRIV:
            if value not in (0, 1, 3):
                return "E01"
            vc.hart.priv = value
            vc.hart.sync_mode()
        else:
            csr = num - CSR0
            if csr not in CSR_NAMES:
                return "E01"
            try:
                vc.hart.csr.write(csr, value, 3)
            except IllegalCsrAccess:
                return "E01"
            vc.hart.sync_mode()
            vc.hart.sync_envcfg()
            vc.irq_dirty = True
        return "OK"

    def _point(self, insert: bool, text: str) -> str:
        parts = text.split(";")[0].split(",")
        if len(parts) != 3:
            raise BadPacket(text)
        z, addr, length = hexint(parts[0]), hexint(parts[1]), hexint(parts[2])
        if z not in Z_KIND:
            return ""
        if z < 2:
            length = 1                        # the kind (2 or 4) is the instruction's size
        if not 0 < length <= 1 << 20:
            raise BadPacket(text)
        key = (z, addr & MASK64, length)
        if insert:
            if key not in self.points and len(self.points) >= 64:
                return "E28"                  # ENOSPC: the core holds 64 points per hart
            self.points[key] = (addr, addr + length, Z_KIND[z])
        else:
            self.points.pop(key, None)
        self._push_points()
        return "OK"

    def _push_points(self) -> None:
        points = list(self.points.values())
        for vc in self.vm.vcpus:
            vc.vcpu.set_debug_points(points)


RESUMED = object()
