// A small test runner (no test framework ships with Debian's Mono): runs every [Test] method
// of the test classes, prints one line per test and "N passed, N failed", and exits non-zero
// when a test failed.
//
//   mono Minimax.Tests.exe SOURCE_DIR
//
// SOURCE_DIR is the repository root (for models/demo, include/ and the layout program);
// MINIMAX_TEST_MODEL and MINIMAX_INCLUDE_DIR override the model and the header directory.
using System;
using System.IO;
using System.Linq;
using System.Reflection;

namespace Minimax.Tests
{
    [AttributeUsage(AttributeTargets.Method)]
    sealed class TestAttribute : Attribute { }

    static class Check
    {
        public static void True(bool condition, string what)
        {
            if (!condition) throw new Exception("check failed: " + what);
        }

        public static void Equal<T>(T expected, T actual, string what)
        {
            if (!Equals(expected, actual))
                throw new Exception(string.Format("{0}: expected {1}, got {2}", what, expected, actual));
        }

        public static MinimaxException Throws(StatusCode code, Action action, string what)
        {
            try { action(); }
            catch (MinimaxException e)
            {
                Equal(code, e.Code, what + " (" + e.Message + ")");
                return e;
            }
            throw new Exception(what + ": no exception, expected " + code);
        }
    }

    static class Env
    {
        public static string SourceDir;

        public static string ModelDir
        {
            get { return Environment.GetEnvironmentVariable("MINIMAX_TEST_MODEL") ?? Path.Combine(SourceDir, "models", "demo"); }
        }

        public static string IncludeDir
        {
            get { return Environment.GetEnvironmentVariable("MINIMAX_INCLUDE_DIR") ?? Path.Combine(SourceDir, "include"); }
        }
    }

    static class Runner
    {
        static int Main(string[] args)
        {
            if (args.Length != 1)
            {
                Console.Error.WriteLine("usage: Minimax.Tests.exe SOURCE_DIR");
                return 2;
            }
            Env.SourceDir = Path.GetFullPath(args[0]);
            int passed = 0, failed = 0;
            var tests = typeof(Runner).Assembly.GetTypes()
                .SelectMany(t => t.GetMethods(BindingFlags.Public | BindingFlags.Static))
                .Where(m => m.GetCustomAttributes(typeof(TestAttribute), false).Length > 0);
            foreach (MethodInfo test in tests)
            {
                string name = test.DeclaringType.Name + "." + test.Name;
                try
                {
                    test.Invoke(null, null);
                    Console.WriteLine("PASS " + name);
                    passed++;
                }
                catch (TargetInvocationException e)
                {
                    Console.WriteLine("FAIL " + name + ": " + e.InnerException);
                    failed++;
                }
            }
            Console.WriteLine("{0} passed, {1} failed", passed, failed);
            return failed == 0 && passed > 0 ? 0 : 1;
        }
    }
}
