using System;
using System.Collections.Generic;
using System.Collections.Immutable;
using System.IO;
using System.Linq;
using System.Threading;
using Basic.Reference.Assemblies;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.Text;

namespace Llama.Compiled.Generator.Tests;

/// <summary>An in-memory AdditionalFiles item.</summary>
internal sealed class InMemoryAdditionalText(string path, string text) : AdditionalText
{
    public override string Path { get; } = path;

    public override SourceText GetText(CancellationToken cancellationToken = default) => SourceText.From(text);
}

/// <summary>What one generator run produced.</summary>
internal sealed record GeneratorRun(
    CSharpCompilation OutputCompilation,
    ImmutableArray<Diagnostic> GeneratorDiagnostics,
    ImmutableArray<GeneratedSourceResult> Sources,
    GeneratorDriver Driver)
{
    /// <summary>Diagnostics of compiling the user code together with the generated code.</summary>
    public ImmutableArray<Diagnostic> CompilationDiagnostics =>
        OutputCompilation.GetDiagnostics().Where(d => d.Severity >= DiagnosticSeverity.Warning).ToImmutableArray();

    public string Source(string hintNameSuffix) =>
        Sources.Single(s => s.HintName.EndsWith(hintNameSuffix, StringComparison.Ordinal)).SourceText.ToString();
}

/// <summary>Runs <see cref="LlamaModelGenerator"/> over a user source and config files, the way the compiler does.</summary>
internal static class GeneratorHarness
{
    public const string SourcePath = "/project/Models.cs";

    private static readonly Lazy<ImmutableArray<MetadataReference>> s_references = new(() =>
        Net100.References.All.Cast<MetadataReference>()
            .Concat(new MetadataReference[]
            {
                MetadataReference.CreateFromFile(typeof(LlamaModelAttribute).Assembly.Location),
                MetadataReference.CreateFromFile(typeof(ILlamaModel).Assembly.Location),
                MetadataReference.CreateFromFile(typeof(System.Numerics.Tensors.TensorPrimitives).Assembly.Location),
            })
            .ToImmutableArray());

    public static CSharpCompilation CreateCompilation(string source) =>
        CSharpCompilation.Create(
            "UserApp",
            new[] { CSharpSyntaxTree.ParseText(source, new CSharpParseOptions(LanguageVersion.Latest), path: SourcePath) },
            s_references.Value,
            new CSharpCompilationOptions(OutputKind.DynamicallyLinkedLibrary, nullableContextOptions: NullableContextOptions.Enable));

    public static GeneratorDriver CreateDriver(IEnumerable<AdditionalText> additionalTexts, bool trackSteps = false) =>
        CSharpGeneratorDriver.Create(
            new[] { new LlamaModelGenerator().AsSourceGenerator() },
            additionalTexts,
            new CSharpParseOptions(LanguageVersion.Latest),
            driverOptions: new GeneratorDriverOptions(IncrementalGeneratorOutputKind.None, trackIncrementalGeneratorSteps: trackSteps));

    public static GeneratorRun Run(string source, params (string Path, string Text)[] configs)
    {
        CSharpCompilation compilation = CreateCompilation(source);
        GeneratorDriver driver = CreateDriver(configs.Select(c => (AdditionalText)new InMemoryAdditionalText(c.Path, c.Text)));
        driver = driver.RunGeneratorsAndUpdateCompilation(compilation, out Compilation output, out ImmutableArray<Diagnostic> diagnostics);
        GeneratorRunResult result = driver.GetRunResult().Results.Single();
        if (result.Exception is not null)
            throw new InvalidOperationException("The generator threw.", result.Exception);
        return new GeneratorRun((CSharpCompilation)output, diagnostics, result.GeneratedSources, driver);
    }

    /// <summary>A user source with one model class on a config at /project/models/config.json.</summary>
    public static string ModelSource(string attributeArguments = "\"models/config.json\"", string declaration = "public partial class TestModel;") => $$"""
        using Llama.Compiled;

        namespace UserApp;

        [LlamaModel({{attributeArguments}})]
        {{declaration}}
        """;

    /// <summary>A test config under Configs/ (real published shapes).</summary>
    public static string Config(string name) => File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Configs", name));

    public static string Stories260KConfig() => File.ReadAllText(Path.Combine(SharedModels(), "stories260K", "hf", "config.json"));

    public static string SharedModels()
    {
        for (string? dir = AppContext.BaseDirectory; dir is not null; dir = Path.GetDirectoryName(dir))
        {
            if (File.Exists(Path.Combine(dir, "Llama.Compiled.sln")))
                return Path.GetFullPath(Path.Combine(dir, "..", "shared", "models"));
        }
        throw new InvalidOperationException("Llama.Compiled.sln not found above " + AppContext.BaseDirectory);
    }
}
