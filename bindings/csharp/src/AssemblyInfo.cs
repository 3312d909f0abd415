using System.Reflection;
using System.Runtime.CompilerServices;

[assembly: AssemblyTitle("Minimax")]
[assembly: AssemblyVersion("0.1.0.0")]
// The layout test checks the internal struct mirrors against the C header.
[assembly: InternalsVisibleTo("Minimax.Tests")]
