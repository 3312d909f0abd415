// Library-wide queries: versions and CUDA devices.
using System.Runtime.InteropServices;

namespace Minimax
{
    public sealed class DeviceInfo
    {
        public int Index, ComputeMajor, ComputeMinor, Multiprocessors;
        public ulong TotalMemoryBytes, FreeMemoryBytes;
        public string Name;
    }

    public static class Library
    {
        /// <summary>The ABI version this binding was written against (MMX_ABI_VERSION).</summary>
        public const uint BindingAbiVersion = 1;

        /// <summary>The ABI version of the loaded library.</summary>
        public static uint AbiVersion { get { return Native.mmx_abi_version(); } }

        /// <summary>"major.minor.patch" plus build details.</summary>
        public static string Version { get { return Utf8.FromZ(Native.mmx_version_string()); } }

        /// <summary>Number of CUDA devices (0 in a CPU-only build).</summary>
        public static int DeviceCount
        {
            get { int n; MinimaxException.Check(Native.mmx_device_count(out n)); return n; }
        }

        public static DeviceInfo Device(int index)
        {
            var d = new Native.mmx_device_info { name = new byte[128] };
            d.struct_size = (uint)Marshal.SizeOf(typeof(Native.mmx_device_info));
            MinimaxException.Check(Native.mmx_device_info_get(index, ref d));
            return new DeviceInfo
            {
                Index = d.index, ComputeMajor = d.compute_major, ComputeMinor = d.compute_minor,
                Multiprocessors = d.multiprocessors, TotalMemoryBytes = d.total_memory_bytes,
                FreeMemoryBytes = d.free_memory_bytes, Name = Utf8.FromArray(d.name),
            };
        }
    }
}
