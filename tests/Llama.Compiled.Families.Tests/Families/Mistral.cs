namespace Llama.Compiled.Families.Tests;

/// <summary>Mistral shape: model_type mistral, sliding_window 128 larger than the 64-position context, GQA 2:1, untied.</summary>
[LlamaModel("Configs/mistral.json")]
public partial class MistralModel;

public sealed class MistralModelTests : FamilyTests
{
    protected override string ConfigFile => "mistral.json";

    protected override ILlamaModel Load(string folder) => MistralModel.Load(folder);
}
