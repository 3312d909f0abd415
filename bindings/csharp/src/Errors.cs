// Errors (every failed call throws MinimaxException with the library's code and message),
// and the UTF-8 conversions every string crossing the ABI goes through.
using System;
using System.Runtime.InteropServices;
using System.Text;

namespace Minimax
{
    /// <summary>Status codes of the C ABI (mmx_code).</summary>
    public enum StatusCode
    {
        Ok = 0, InvalidArgument = 1, Unsupported = 2, NotFound = 3, Io = 4, Format = 5,
        Capacity = 6, OutOfMemory = 7, Cancelled = 8, Timeout = 9, Device = 10, State = 11,
        Internal = 12, BufferTooSmall = 13
    }

    /// <summary>A failed libminimax call.</summary>
    public class MinimaxException : Exception
    {
        public StatusCode Code { get; private set; }

        public MinimaxException(StatusCode code, string message)
            : base(Utf8.FromZ(Native.mmx_code_name((int)code)) + ": " + message)
        {
            Code = code;
        }

        /// <summary>Reads a status without taking ownership (events lend theirs).</summary>
        internal static MinimaxException FromStatus(IntPtr status)
        {
            return new MinimaxException((StatusCode)Native.mmx_status_code(status),
                                        Utf8.FromZ(Native.mmx_status_message(status)));
        }

        /// <summary>Takes ownership of a returned status: NULL is success, anything else throws.</summary>
        internal static void Check(IntPtr status)
        {
            if (status == IntPtr.Zero) return;
            try { throw FromStatus(status); }
            finally { Native.mmx_status_free(status); }
        }
    }

    internal static class Utf8
    {
        /// <summary>NUL-terminated UTF-8, as the C functions without a length take it.</summary>
        internal static byte[] Z(string s)
        {
            if (s == null) throw new ArgumentNullException();
            if (s.IndexOf('\0') >= 0)
                throw new MinimaxException(StatusCode.InvalidArgument, "string contains a NUL character");
            var bytes = new byte[Encoding.UTF8.GetByteCount(s) + 1];
            Encoding.UTF8.GetBytes(s, 0, s.Length, bytes, 0);
            return bytes;
        }

        internal static string From(IntPtr p, int len)
        {
            if (p == IntPtr.Zero || len == 0) return "";
            var bytes = new byte[len];
            Marshal.Copy(p, bytes, 0, len);
            return Encoding.UTF8.GetString(bytes);
        }

        internal static string FromZ(IntPtr p)
        {
            int len = 0;
            if (p != IntPtr.Zero)
                while (Marshal.ReadByte(p, len) != 0) len++;
            return From(p, len);
        }

        /// <summary>Text of a fixed-size NUL-terminated char array of an output struct.</summary>
        internal static string FromArray(byte[] chars)
        {
            int len = Array.IndexOf(chars, (byte)0);
            return Encoding.UTF8.GetString(chars, 0, len < 0 ? chars.Length : len);
        }
    }
}
