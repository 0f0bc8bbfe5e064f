// Reads one named section of an ELF file (kernel modules are relocatable
// objects: no program headers, so the section table is the only map).

export function elfSection(buf: Uint8Array, wanted: string): Uint8Array | null {
  if (buf.length < 64 || buf[0] !== 0x7f || buf[1] !== 0x45 || buf[2] !== 0x4c || buf[3] !== 0x46) return null;
  const is64 = buf[4] === 2;
  const le = buf[5] === 1;
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const word = (o: number) => (is64 ? Number(v.getBigUint64(o, le)) : v.getUint32(o, le));
  const shoff = word(is64 ? 0x28 : 0x20);
  const shentsize = v.getUint16(is64 ? 0x3a : 0x2e, le);
  const shnum = v.getUint16(is64 ? 0x3c : 0x30, le);
  const shstrndx = v.getUint16(is64 ? 0x3e : 0x32, le);
  if (shoff === 0 || shoff + shnum * shentsize > buf.length || shstrndx >= shnum) return null;
  const sec = (i: number) => {
    const b = shoff + i * shentsize;
    return {
      name: v.getUint32(b, le),
      offset: is64 ? Number(v.getBigUint64(b + 0x18, le)) : v.getUint32(b + 0x10, le),
      size: is64 ? Number(v.getBigUint64(b + 0x20, le)) : v.getUint32(b + 0x14, le),
    };
  };
  const strtab = sec(shstrndx);
  const dec = new TextDecoder();
  for (let i = 0; i < shnum; i++) {
    const s = sec(i);
    const start = strtab.offset + s.name;
    const end = buf.indexOf(0, start);
    if (end < 0) continue;
    if (dec.decode(buf.subarray(start, end)) === wanted) {
      if (s.offset + s.size > buf.length) return null;
      return buf.subarray(s.offset, s.offset + s.size);
    }
  }
  return null;
}
