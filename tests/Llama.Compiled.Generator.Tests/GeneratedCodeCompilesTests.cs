using System.Linq;
using Xunit;

namespace Llama.Compiled.Generator.Tests;

public sealed class GeneratedCodeCompilesTests
{
    [Fact]
    public void Stories260KCompilesWithoutWarnings()
    {
        GeneratorRun run = GeneratorHarness.Run(
            GeneratorHarness.ModelSource(declaration: "public partial class Stories260K;"),
            ("/project/models/config.json", GeneratorHarness.Stories260KConfig()));

        Assert.Empty(run.GeneratorDiagnostics);
        Assert.Equal(2, run.Sources.Length);
        Assert.Empty(run.CompilationDiagnostics);
    }

    [Fact]
    public void GeneratedClassExposesTheContractAndConstants()
    {
        GeneratorRun run = GeneratorHarness.Run(
            GeneratorHarness.ModelSource(declaration: "public partial class Stories260K;"),
            ("/project/models/config.json", GeneratorHarness.Stories260KConfig()));

        var type = run.OutputCompilation.GetTypeByMetadataName("UserApp.Stories260K")!;
        // The contract is the class's public surface: its own members and those of the runtime's LlamaModel/LlamaSession.
        static string[] PublicMembers(Microsoft.CodeAnalysis.INamedTypeSymbol? t)
        {
            var names = new System.Collections.Generic.List<string>();
            for (; t is not null; t = t.BaseType)
                names.AddRange(t.GetMembers().Where(m => m.DeclaredAccessibility == Microsoft.CodeAnalysis.Accessibility.Public).Select(m => m.Name));
            return names.ToArray();
        }
        string[] members = PublicMembers(type);
        foreach (string name in new[] { "Load", "CreateSession", "HiddenSize", "LayerCount", "HeadCount", "KvHeadCount",
                                        "HeadDim", "IntermediateSize", "VocabSize", "MaxContext", "Dispose", "Shape" })
            Assert.Contains(name, members);
        var session = type.GetTypeMembers("Session").Single();
        string[] sessionMembers = PublicMembers(session);
        foreach (string name in new[] { "Forward", "Position", "Reset", "Dispose", "Logits", "Save", "Restore", "Options", "Model" })
            Assert.Contains(name, sessionMembers);
        Assert.Equal(64, type.GetMembers("HiddenSize").OfType<Microsoft.CodeAnalysis.IFieldSymbol>().Single().ConstantValue);
    }

    [Fact]
    public void EveryGeneratedTypeAndMethodIsMarkedGeneratedButNotTheUsersClass()
    {
        GeneratorRun run = GeneratorHarness.Run(
            GeneratorHarness.ModelSource(declaration: "public partial class Stories260K;"),
            ("/project/models/config.json", GeneratorHarness.Stories260KConfig()));
        var type = run.OutputCompilation.GetTypeByMetadataName("UserApp.Stories260K")!;
        static bool Marked(Microsoft.CodeAnalysis.ISymbol symbol) =>
            symbol.GetAttributes().Any(a => a.AttributeClass?.ToDisplayString() == "System.CodeDom.Compiler.GeneratedCodeAttribute");

        Assert.False(Marked(type), "the user's partial class is marked as generated code");
        foreach (var nested in type.GetTypeMembers())
            Assert.True(Marked(nested), $"{nested.Name} has no [GeneratedCode]");
        foreach (string method in new[] { "Load", "CreateSession", "OpenSession", ".ctor" })
            Assert.All(type.GetMembers(method), m => Assert.True(Marked(m), $"{method} has no [GeneratedCode]"));
    }

    [Theory]
    [InlineData("public partial class Model;")]
    [InlineData("partial class Model;")]
    [InlineData("internal sealed partial class Model { }")]
    public void ClassDeclarationsCompile(string declaration)
    {
        GeneratorRun run = GeneratorHarness.Run(GeneratorHarness.ModelSource(declaration: declaration),
            ("/project/models/config.json", GeneratorHarness.Stories260KConfig()));
        Assert.Empty(run.GeneratorDiagnostics);
        Assert.Empty(run.CompilationDiagnostics);
    }

    [Fact]
    public void ModelInTheGlobalNamespaceAndNestedClassesCompile()
    {
        const string source = """
            using Llama.Compiled;

            [LlamaModel("models/config.json")]
            public partial class GlobalModel;

            public static partial class Outer
            {
                public partial class Inner
                {
                    [LlamaModel("models/config.json", MaxContext = 128)]
                    public partial class NestedModel;
                }
            }
            """;
        GeneratorRun run = GeneratorHarness.Run(source, ("/project/models/config.json", GeneratorHarness.Stories260KConfig()));
        Assert.Empty(run.GeneratorDiagnostics);
        Assert.Equal(4, run.Sources.Length);
        Assert.Empty(run.CompilationDiagnostics);
        var nested = run.OutputCompilation.GetTypeByMetadataName("Outer+Inner+NestedModel")!;
        Assert.Equal(128, nested.GetMembers("MaxContext").OfType<Microsoft.CodeAnalysis.IFieldSymbol>().Single().ConstantValue);
    }
}
