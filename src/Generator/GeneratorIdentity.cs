namespace Llama.Compiled.Generator;

/// <summary>
/// Who generated the code: the name and version that <c>[GeneratedCode]</c> on every generated type carries, as
/// dotnet/runtime's generators (System.Text.Json, Regex) stamp theirs. The version is the generator assembly's
/// (the package version: VersionPrefix in src/Directory.Build.props), without the commit, so the generated
/// text changes with a release, not with every build.
/// </summary>
internal static class GeneratorIdentity
{
    /// <summary>The tool name in <c>[GeneratedCode]</c>.</summary>
    public const string Name = "Llama.Compiled.Generator";

    /// <summary>The generator's assembly version, e.g. <c>0.1.0.0</c>.</summary>
    public static readonly string Version = typeof(GeneratorIdentity).Assembly.GetName().Version?.ToString() ?? "0.0.0.0";

    /// <summary>
    /// The attribute line, fully qualified so no using and no user type named GeneratedCode can change its
    /// meaning: <c>[global::System.CodeDom.Compiler.GeneratedCodeAttribute("Llama.Compiled.Generator", "0.1.0.0")]</c>.
    /// </summary>
    public static readonly string GeneratedCodeAttribute =
        "[global::System.CodeDom.Compiler.GeneratedCodeAttribute(\"" + Name + "\", \"" + Version + "\")]";
}
