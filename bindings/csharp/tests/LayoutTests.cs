// The struct mirrors in Native against the real header: tests/bindings/struct_layout.c,
// compiled with the C compiler (CC, default cc), prints every struct's size and every field's
// offset and size; each must match the marshalled layout of the mirror, field for field.
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Reflection;
using System.Runtime.InteropServices;

namespace Minimax.Tests
{
    static class LayoutTests
    {
        static string Run(string file, string args)
        {
            var info = new ProcessStartInfo(file, args) { UseShellExecute = false, RedirectStandardOutput = true };
            using (Process p = Process.Start(info))
            {
                string output = p.StandardOutput.ReadToEnd();
                p.WaitForExit();
                Check.Equal(0, p.ExitCode, file + " " + args);
                return output;
            }
        }

        static Dictionary<string, string> CLayout()
        {
            string exe = Path.Combine(Path.GetTempPath(), "minimax-csharp-layout-" + Process.GetCurrentProcess().Id);
            string source = Path.Combine(Env.SourceDir, "tests", "bindings", "struct_layout.c");
            Run(Environment.GetEnvironmentVariable("CC") ?? "cc",
                string.Format("-I \"{0}\" \"{1}\" -o \"{2}\"", Env.IncludeDir, source, exe));
            string output = Run(exe, "");
            File.Delete(exe);
            var layout = new Dictionary<string, string>();
            foreach (string line in output.Split(new[] { '\n' }, StringSplitOptions.RemoveEmptyEntries))
            {
                int space = line.IndexOf(' ');
                layout[line.Substring(0, space)] = line.Substring(space + 1);
            }
            return layout;
        }

        static int FieldSize(FieldInfo f)
        {
            if (!f.FieldType.IsArray) return Marshal.SizeOf(f.FieldType);
            var marshal = (MarshalAsAttribute)f.GetCustomAttributes(typeof(MarshalAsAttribute), false)[0];
            return marshal.SizeConst * Marshal.SizeOf(f.FieldType.GetElementType());
        }

        [Test]
        public static void StructsMatchTheCHeader()
        {
            Dictionary<string, string> c = CLayout();
            var mine = new Dictionary<string, string>();
            foreach (Type t in new[] { typeof(Native.mmx_device_info), typeof(Native.mmx_model_info),
                                       typeof(Native.mmx_memory_estimate), typeof(Native.mmx_context_stats) })
            {
                mine[t.Name] = Marshal.SizeOf(t).ToString();
                foreach (FieldInfo f in t.GetFields())
                    mine[t.Name + "." + f.Name] = Marshal.OffsetOf(t, f.Name) + " " + FieldSize(f);
            }
            Check.True(c.Count > 40, "the layout program printed " + c.Count + " lines");
            foreach (var kv in c)
            {
                string got;
                mine.TryGetValue(kv.Key, out got);
                Check.Equal(kv.Value, got, kv.Key + " (C: size or offset, size)");
            }
            Check.Equal(c.Count, mine.Count, "number of structs and fields");
        }
    }
}
