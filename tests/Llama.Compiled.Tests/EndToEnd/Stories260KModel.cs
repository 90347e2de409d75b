namespace Llama.Compiled.Tests;

/// <summary>stories260K compiled from its real config, as a user would declare it.</summary>
[LlamaModel("stories260K/hf/config.json")]
public partial class Stories260K;
